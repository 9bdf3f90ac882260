# The controller image: `holdfast` on distroless, running as the unprivileged user 65532.
#
#   docker build -t ghcr.io/holdfast-dev/holdfast:0.1.0 \
#     --build-arg HOLDFAST_COMMIT="$(git rev-parse --short HEAD)" .
#
# manifests/deployment.yaml runs it with `controller --kube ...`. The agent is not in this
# image: it runs on the hosts it backs up (see manifests/README.md).

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole workspace: Cargo needs every member's manifest to resolve the lockfile.
COPY . .
# .git stays out of the context (.dockerignore): the commit for holdfast_build_info comes in
# as an argument, `unknown` without one.
ARG HOLDFAST_COMMIT=unknown
RUN cargo build --release --locked -p holdfast

# glibc and libgcc, no shell, no package manager; the `nonroot` tag runs as 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/holdfast /usr/local/bin/holdfast
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/holdfast"]
