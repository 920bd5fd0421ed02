"""Applications: how Amber groups a cluster's objects into the units it protects and restores."""
