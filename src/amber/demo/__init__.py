"""``amber demo``'s work, composed from library calls below the CLI (the command only starts
the cluster and prints)."""
