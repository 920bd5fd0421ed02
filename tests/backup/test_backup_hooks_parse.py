"""Reading backup hooks from pod annotations (Velero's spelling and Amber's), without a cluster:
what each annotation means, its defaults, and bad values turned into failed hooks that name the
annotation instead of being skipped."""

from __future__ import annotations

import json
from typing import Any

from amber.backup import hooks


def _pod(annotations: dict[str, str], containers: tuple[str, ...] = ("db", "sidecar")
         ) -> dict[str, Any]:
    return {"metadata": {"name": "db-0", "namespace": "shop", "annotations": annotations},
            "spec": {"containers": [{"name": c} for c in containers]}}


def test_velero_annotations_with_their_defaults() -> None:
    found = hooks.of_pod(_pod({
        "pre.hook.backup.velero.io/command": '["/sbin/fsfreeze", "--freeze", "/data"]',
        "post.hook.backup.velero.io/command": '["/sbin/fsfreeze", "--unfreeze", "/data"]',
        "post.hook.backup.velero.io/container": "sidecar",
        "post.hook.backup.velero.io/on-error": "Continue",
        "post.hook.backup.velero.io/timeout": "1m30s",
    }))
    assert not found.invalid
    (pre,), (post,) = found.pre, found.post
    assert pre.command == ("/sbin/fsfreeze", "--freeze", "/data")
    assert pre.container == "db"  # the first container
    assert pre.fail is True and pre.timeout == 30.0  # Velero's defaults: Fail, 30s
    assert (post.container, post.fail, post.timeout) == ("sidecar", False, 90.0)


def test_a_command_that_is_not_a_json_array_is_one_word() -> None:
    found = hooks.of_pod(_pod({"pre.hook.backup.velero.io/command": "/usr/local/bin/quiesce"}))
    assert found.pre[0].command == ("/usr/local/bin/quiesce",)


def test_amber_annotation_lists_several_hooks() -> None:
    spec = [{"phase": "pre", "command": ["psql", "-c", "CHECKPOINT"], "timeout": "500ms"},
            {"phase": "pre", "command": ["sync"], "onError": "continue"},
            {"phase": "post", "command": ["true"], "container": "sidecar"}]
    found = hooks.of_pod(_pod({hooks.AMBER: json.dumps(spec)}))
    assert [h.command for h in found.pre] == [("psql", "-c", "CHECKPOINT"), ("sync",)]
    assert found.pre[0].timeout == 0.5 and found.pre[1].fail is False
    assert found.post[0].container == "sidecar"


def test_bad_values_become_failed_hooks_that_name_the_annotation() -> None:
    found = hooks.of_pod(_pod({
        "pre.hook.backup.velero.io/command": '["unterminated"',
        "post.hook.backup.velero.io/command": '["true"]',
        "post.hook.backup.velero.io/container": "nosuch",
    }))
    assert not found.pre and not found.post
    errors = sorted(r.error for r in found.invalid)
    assert any("pre.hook.backup.velero.io/command" in e for e in errors)
    assert any("no container 'nosuch'" in e for e in errors)
    timeout = hooks.of_pod(_pod({"pre.hook.backup.velero.io/command": "x",
                                 "pre.hook.backup.velero.io/timeout": "soon"}))
    assert "not a duration" in timeout.invalid[0].error
    broken = hooks.of_pod(_pod({hooks.AMBER: "{not json"}))
    assert broken.invalid and hooks.AMBER in broken.invalid[0].error
    phase = hooks.of_pod(_pod({hooks.AMBER: json.dumps([{"phase": "during", "command": ["x"]}])}))
    assert "phase is pre or post" in phase.invalid[0].error


def test_misspellings_are_refused_in_plain_words_not_guessed() -> None:
    """A value Amber does not know is a failed hook that says so: an on-error other than
    Fail/Continue (not quietly taken as Fail), an unknown key of Amber's spelling (onerror
    would otherwise leave the default on), broken JSON (in words, not the parser's)."""
    sometimes = hooks.of_pod(_pod({"pre.hook.backup.velero.io/command": "x",
                                   "pre.hook.backup.velero.io/on-error": "Sometimes"}))
    (bad,) = sometimes.invalid
    assert bad.error.startswith("annotation pre.hook.backup.velero.io/on-error: on-error "
                                "'Sometimes' is neither Fail nor Continue"), bad.error
    # a misspelt Velero key: the pre hook would be lost and the pod never frozen
    comand = hooks.of_pod(_pod({"pre.hook.backup.velero.io/comand": '["fsfreeze", "-f", "/d"]',
                                "post.hook.backup.velero.io/command": '["true"]'}))
    (typo,) = comand.invalid
    assert typo.hook.phase == "pre" and typo.hook.fail
    assert "annotation pre.hook.backup.velero.io/comand: unknown key" in typo.error
    assert len(comand.post) == 1
    assert bad.hook.fail is True  # refusing it fails closed: a pre hook stops the backup
    typo = hooks.of_pod(_pod({hooks.AMBER: json.dumps(
        [{"phase": "pre", "command": ["x"], "onerror": "Continue"}])}))
    assert "unknown key(s) onerror" in typo.invalid[0].error
    broken = hooks.of_pod(_pod({"pre.hook.backup.velero.io/command": '["a", oops]'}))
    (run,) = broken.invalid
    assert "starts a JSON array but is not one" in run.error
    assert "Expecting" not in run.line().split(":", 1)[0]
    assert "(: )" not in run.line() and run.line().startswith("pre hook of pod shop/db-0 failed")
    not_json = hooks.of_pod(_pod({hooks.AMBER: "{not json"}))
    assert "not JSON (" in not_json.invalid[0].error


def test_a_pod_without_hooks_has_none() -> None:
    found = hooks.of_pod(_pod({"unrelated": "x"}))
    assert not (found.pre or found.post or found.invalid)
