# sproutd in a container: built from source in a Rust image, run as the unprivileged
# user sprout from Debian bookworm-slim, jobs in the volume /var/lib/sprout.
#
#   docker build -t sprout .
#   docker run -d --name sprout -p 11300:11300 -v sprout-data:/var/lib/sprout sprout
#   docker exec sprout sprout stats
#
# Extra flags go after the image name and replace the default ones, so keep -b:
#   docker run ... sprout -b /var/lib/sprout -p 11300 --metrics 0.0.0.0:9100 -V
# scripts/test-container builds and runs this (docker or podman).

ARG RUST_IMAGE=docker.io/library/rust:1-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked --bins \
 && strip --strip-debug target/release/sproutd target/release/sprout \
 && target/release/sproutd -v

FROM ${RUNTIME_IMAGE}
RUN groupadd --system sprout \
 && useradd --system --gid sprout --home-dir /var/lib/sprout --no-create-home \
      --shell /usr/sbin/nologin sprout \
 && install -d -o sprout -g sprout -m 0750 /var/lib/sprout
COPY --from=build /src/target/release/sproutd /src/target/release/sprout /usr/local/bin/
USER sprout:sprout
WORKDIR /var/lib/sprout
VOLUME /var/lib/sprout
EXPOSE 11300
# SIGTERM: connections finish the replies they owe, the binlog is synced, exit 0 (< 5 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["sprout", "-a", "127.0.0.1:11300", "stats", "--json"]
ENTRYPOINT ["sproutd"]
CMD ["-b", "/var/lib/sprout", "-p", "11300"]
