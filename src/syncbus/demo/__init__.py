"""The live demo: simulated departments, the stack of processes, the view."""
