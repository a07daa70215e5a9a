"""What a person reads after the runs: per-seed metrics aggregated, per-dataset summary pages, the significance
report (Friedman/Nemenyi, critical-difference diagram, length breakdown) and the figures. Nothing here trains or
predicts; every module reads files the earlier stages wrote."""
