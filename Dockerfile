# Production image: the release binary (built without the development IdP) on distroless/cc,
# running as non-root (uid 10001).
#
# The image carries no configuration and no keys. It refuses to start until a configuration is
# mounted at /etc/cognito-gate/config.toml: that path does not exist in the image, and the
# binary exits 1 with "cannot read ..." when the --config path is missing. Mount the config
# (with any certificates it names, relative to its folder) over /etc/cognito-gate and pass
# secrets as environment variables for its ${NAME} references (docs/operations.md, "Deploying";
# deploy/kubernetes/ and deploy/compose/ show both).
#
#   docker build -t cognito-gate .
#   docker run --rm -v "$PWD/prod:/etc/cognito-gate:ro" -e COGNITO_CLIENT_SECRET=... \
#     -p 8443:8443 cognito-gate
#   docker run --rm -v "$PWD/prod:/etc/cognito-gate:ro" cognito-gate check-config
#
# No image bakes in config.toml or certs/: an image holding the development private keys and
# demo passwords is one `docker push` away from a registry. For a containerised development
# setup use deploy/compose/, which builds this Dockerfile with CARGO_FEATURES=dev-idp (the
# development IdP compiled in) and mounts the development files read-only.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when Cargo.toml or Cargo.lock
# change, not on every source edit. The stub sources only let cargo build the dependency graph.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > build.rs \
 && sed -i '/^\[\[test\]\]/,/^$/d' Cargo.toml \
 && cargo build --release --locked --no-default-features \
 && rm -rf src build.rs target/release/.fingerprint/cognito-gate-* target/release/deps/cognito_gate-* \
      target/release/deps/libcognito_gate-* target/release/build/cognito-gate-*
COPY Cargo.toml ./Cargo.toml
# build.rs puts the commit into cognito_gate_build_info: pass it, since .git is not copied
# (docker build --build-arg COGNITO_GATE_COMMIT=$(git rev-parse --short=12 HEAD) .).
COPY build.rs ./build.rs
ARG COGNITO_GATE_COMMIT=unknown
ENV COGNITO_GATE_COMMIT=$COGNITO_GATE_COMMIT
COPY src ./src
# Without the default `dev-idp` feature: no development IdP, no embedded development
# configuration, and no `rsa` crate in the binary; it refuses to start without --config.
# deploy/compose/ builds its development image with CARGO_FEATURES=dev-idp (keys still mounted).
ARG CARGO_FEATURES=""
RUN cargo build --release --locked --no-default-features ${CARGO_FEATURES:+--features $CARGO_FEATURES} \
 && strip target/release/cognito-gate

# distroless/cc: glibc and CA certificates, and nothing else — no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG COGNITO_GATE_COMMIT=unknown
ARG COGNITO_GATE_VERSION=0.1.0
LABEL org.opencontainers.image.title="cognito-gate" \
      org.opencontainers.image.description="In-VPC gateway that authenticates workloads against Amazon Cognito through a private API Gateway and guards private APIs like a Cognito user pool authorizer" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version=$COGNITO_GATE_VERSION \
      org.opencontainers.image.revision=$COGNITO_GATE_COMMIT
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
