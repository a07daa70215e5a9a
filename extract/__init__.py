"""Stage 1: decode videos, run the frozen InternVideo2 backbone once, cache pooled layer features in Zarr."""

# Bump when a code change alters the cached feature values (decoding, sampling, backbone numerics).
# It is part of the cache identity hash, so a new version builds a new store instead of mixing features;
# other code changes re-run the shard jobs, which keep every item already extracted and sound.
FEATURE_VERSION = 2
