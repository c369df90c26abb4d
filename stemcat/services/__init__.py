"""Long-lived HTTP services of stemcat and the pieces they share."""
