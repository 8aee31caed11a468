# rbuild's own image. Placeholder until the pipeline issue: the multi-stage Rust build and the
# rootless runtime image (newuidmap/newgidmap, uid 1000 with a subuid range) land there.
FROM scratch
LABEL org.opencontainers.image.title="rbuild"
