"""The stemcat command line: a thin shell over the flows and the read-only catalog."""
