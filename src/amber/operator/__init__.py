"""The operator: Amber's CRDs reconciled in the cluster, so backups, retention and drills run
by themselves (issue 14; decision 0037)."""
