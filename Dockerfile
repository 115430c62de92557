# Multi-stage build: a static-ish release binary on a small Debian runtime, running as non-root.
# Mount your config.toml and certs/ over /etc/cognito-gate (see README "Running in production").
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config.toml ./config.toml
COPY certs ./certs
RUN cargo build --release --locked && strip target/release/cognito-gate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin cognito-gate
COPY --from=build /src/target/release/cognito-gate /usr/local/bin/cognito-gate
COPY --from=build /src/config.toml /etc/cognito-gate/config.toml
COPY --from=build /src/certs /etc/cognito-gate/certs
WORKDIR /etc/cognito-gate
USER 10001:10001
EXPOSE 8080 8443 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cognito-gate"]
CMD ["--config", "/etc/cognito-gate/config.toml"]
