# Mosquitto from Debian packages, on the node's base image (docker-compose.local-images.yml).
ARG BASE_IMAGE=python:3.13-slim-trixie
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="edge-node-mosquitto" \
      org.opencontainers.image.description="Mosquitto from Debian packages for the edge node compose stacks"
# Versions come from the base's Debian release. The user is made first with a fixed id (1883), which the
# package then uses.
# hadolint ignore=DL3008
RUN groupadd --system --gid 1883 mosquitto \
 && useradd --system --no-log-init --uid 1883 --gid mosquitto --home-dir /var/lib/mosquitto --no-create-home \
      --shell /usr/sbin/nologin mosquitto \
 && apt-get update \
 && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o mosquitto -g mosquitto /mosquitto/config /mosquitto/data
COPY mosquitto/mosquitto.conf /mosquitto/config/mosquitto.conf
EXPOSE 1883
USER 1883:1883
CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
