# Production image: the release binary on a small Debian runtime, running as non-root (uid 10001).
#
# The image carries no configuration and no keys. It refuses to start until a configuration is
# mounted at /etc/cognito-gate/config.toml: that path does not exist in the image, and the
# binary exits 1 with "cannot read ..." when the --config path is missing. Mount the config
# (with any certificates it names, relative to its folder) over /etc/cognito-gate and pass
# secrets as environment variables for its ${NAME} references (README "Running in production";
# deploy/kubernetes/ and deploy/compose/ show both).
#
#   docker build -t cognito-gate .
#   docker run --rm -v "$PWD/prod:/etc/cognito-gate:ro" -e COGNITO_CLIENT_SECRET=... \
#     -p 8443:8443 cognito-gate
#   docker run --rm -v "$PWD/prod:/etc/cognito-gate:ro" cognito-gate check-config
#
# There is deliberately no development variant of this image (no build ARG or target that bakes
# in config.toml and certs/): an image holding the development private keys and demo passwords
# is one `docker push` away from a registry, and the shipped config.toml listens on 127.0.0.1,
# which is unreachable from outside a container anyway. For a containerised development setup
# use deploy/compose/, which runs this same image with the development files mounted read-only.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# config.toml is compiled into the binary (the fallback when neither --config nor ./config.toml
# is given); it is needed to build, and is not copied into the runtime image. The entrypoint
# below always passes --config, so that fallback is never used in this image.
COPY config.toml ./config.toml
# build.rs puts the commit into cognito_gate_build_info: pass it, since .git is not copied
# (docker build --build-arg COGNITO_GATE_COMMIT=$(git rev-parse --short=12 HEAD) .).
COPY build.rs ./build.rs
ARG COGNITO_GATE_COMMIT=unknown
ENV COGNITO_GATE_COMMIT=$COGNITO_GATE_COMMIT
COPY src ./src
RUN cargo build --release --locked && strip target/release/cognito-gate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cognito-gate \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin cognito-gate
COPY --from=build /src/target/release/cognito-gate /usr/local/bin/cognito-gate
# An empty folder for the mount; relative paths in the config resolve against the config's folder.
WORKDIR /etc/cognito-gate
USER 10001:10001
EXPOSE 8080 8443 9901
STOPSIGNAL SIGTERM
# --config is part of the entrypoint, so `docker run IMAGE check-config` (or verify-token, login)
# uses the mounted file too; no arguments at all serves. --config is a global option, so it may
# precede the subcommand. Use another path by mounting it here, not by adding a second --config.
ENTRYPOINT ["/usr/local/bin/cognito-gate", "--config", "/etc/cognito-gate/config.toml"]
CMD []
# No HEALTHCHECK: the runtime has no HTTP client, the admin address depends on the mounted
# config, and orchestrators probe /healthz and /readyz themselves (deploy/kubernetes/).
