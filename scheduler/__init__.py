"""Pure decisions: placement, reconcile, node health. No I/O, no clock: `now` is passed in."""
