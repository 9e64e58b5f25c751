"""kdsnn: hardware."""
