"""The selection benchmark: selectors x budgets x seeds -> students -> probes -> a report."""
