# rbuild's own image: a multi-stage Rust build, then a small rootless runtime.
#
#   rbuild build --context . --destination registry.example.com/tools/rbuild:latest \
#     --build-arg RUST_IMAGE=registry.example.com/mirror/rust:1-bookworm \
#     --build-arg RUNTIME_IMAGE=registry.example.com/mirror/debian:bookworm-slim
#
# rbuild builds this file itself (integration/scripts/self-build.sh, docs/pipeline.md), so it
# sticks to what every Dockerfile builder supports: no RUN --mount cache mounts, and every
# runtime step works with RUN as root (ownership of the user's home comes from COPY --chown).

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p rbuild \
 && install -D -m 0755 target/release/rbuild /out/bin/rbuild \
 && mkdir -p /out/home/rbuild/.docker /out/home/rbuild/.cache /out/workspace

FROM ${RUNTIME_IMAGE}
# newuidmap/newgidmap give RUN the full 65536-id map; CA certificates for HTTPS registries;
# git for `--commit-suffix auto`, which refuses a context it cannot prove clean.
# APT::Sandbox::User=root: apt must not switch to _apt, which a single-id user namespace lacks.
# As in BuildKit's rootless image the helpers carry file capabilities instead of the setuid
# bit: a setuid-root newuidmap is not the owner of the user namespace it maps and fails in
# pods without CAP_SYS_ADMIN ("write to uid_map failed"), one with cap_setuid+ep works.
RUN apt-get -o APT::Sandbox::User=root update \
 && DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root install -y --no-install-recommends uidmap ca-certificates libcap2-bin git \
 && chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \
 && setcap cap_setuid+ep /usr/bin/newuidmap \
 && setcap cap_setgid+ep /usr/bin/newgidmap \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
# User 1000 with a subordinate id range (written directly: no useradd, no chown in RUN).
# /etc/rbuild/own-image marks this image as rbuild's own: `--isolation container`
# (Kaniko-style builds in the container's own root, for pods without user namespaces)
# refuses to overwrite any other root file system.
RUN echo 'rbuild:x:1000:1000:rbuild:/home/rbuild:/bin/sh' >> /etc/passwd \
 && echo 'rbuild:x:1000:' >> /etc/group \
 && echo 'rbuild:!:19000:0:99999:7:::' >> /etc/shadow \
 && echo 'rbuild:100000:65536' > /etc/subuid \
 && echo 'rbuild:100000:65536' > /etc/subgid \
 && mkdir -p /etc/rbuild \
 && echo 'This root file system is the rbuild image; rbuild --isolation container may replace it.' > /etc/rbuild/own-image
COPY --from=builder /out/bin/rbuild /usr/local/bin/rbuild
COPY --from=builder --chown=1000:1000 /out/home/rbuild /home/rbuild
COPY --from=builder --chown=1000:1000 /out/workspace /workspace
ENV DOCKER_CONFIG=/home/rbuild/.docker
USER 1000:1000
WORKDIR /workspace
ENTRYPOINT ["rbuild"]
CMD ["--help"]
LABEL org.opencontainers.image.title="rbuild" \
      org.opencontainers.image.description="rootless, daemonless container image builder"
