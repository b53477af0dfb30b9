# strata in a small image: built with the Rust toolchain (and libclang for pg_query),
# run on Debian slim as a non-root user.
#
#   docker build -t strata .
#   docker run -p 7070:7070 -v $PWD/deploy/strata.toml:/etc/strata/strata.toml strata
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p strata --locked \
 && strip target/release/strata

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home strata
COPY --from=build /src/target/release/strata /usr/local/bin/strata
USER 10001
# API and /metrics, HTTP proxy, PostgreSQL proxy.
EXPOSE 7070 7080 6433
ENV STRATA_CONFIG=/etc/strata/strata.toml
ENTRYPOINT ["/usr/local/bin/strata"]
CMD ["serve"]
