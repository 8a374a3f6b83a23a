# Finishing stage of the offline sandbox image build (see build_offline.sh).
#
# BASE_IMAGE is a local image imported from a debootstrapped Debian rootfs, so
# this build needs no registry. The rootfs already contains the `sandbox` user
# (uid/gid 1000), /workspace and the matplotlib font defaults.
ARG BASE_IMAGE=lci-sandbox-rootfs:latest
FROM ${BASE_IMAGE}

ARG LCI_AGENT_PROTOCOL=1
ARG LCI_AGENT_DIGEST=unknown
ARG LCI_BUILD_HASH=unknown

ENV LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/workspace

# The agent (build_offline.sh puts it in the context), read-only for the sandbox user.
COPY lci_agent /opt/lci-agent/lci_agent
RUN chmod -R a+rX,go-w /opt/lci-agent

USER sandbox
WORKDIR /workspace

# Build matplotlib's font list once, as the sandbox user. It lands in
# $MPLCONFIGDIR; a run that mounts a fresh tmpfs on /tmp rebuilds it on first
# use (about 0.2 s with the fonts installed here).
RUN python3 -c "import matplotlib.pyplot" \
 && test -f /tmp/matplotlib/fontlist-v*.json

LABEL lci.image="sandbox" \
      lci.agent_protocol="${LCI_AGENT_PROTOCOL}" \
      lci.agent_digest="${LCI_AGENT_DIGEST}" \
      lci.build_hash="${LCI_BUILD_HASH}" \
      lci.build="offline" \
      org.opencontainers.image.title="lci sandbox" \
      org.opencontainers.image.description="Python sandbox for the lci code interpreter (Debian bookworm, offline build)"

CMD ["python3"]
