"""The standard tasks, registered through the public `optbench` task hook."""
