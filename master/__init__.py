"""The daemon: reconcile loop, probers, API, and their wiring."""
