"""First-party optimizer and metric plugins, registered through the public `optbench` hooks."""
