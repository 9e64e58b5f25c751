"""kdsnn: kd_snn."""
