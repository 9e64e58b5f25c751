"""kdsnn: export."""
