# The image the Helm chart (helm/ray-queue) runs in every Ray container: Ray from the
# rayproject image, plus ray-queue and its dependencies installed from the hashed lock.
#
# Build and push it from the repository root (see docs/helm.md, "Build the image"):
#
#   docker build -t REGISTRY/ray-queue:0.1.0 .
#   docker push REGISTRY/ray-queue:0.1.0
#
# The base image's Ray, the chart's `rayVersion` and the `ray==` pin in requirements/ are
# one version; tests/test_image.py checks it. To move Ray, change all three and re-lock.
#
# The base image's user is `ray` (uid 1000, gid 100 `users`, home /home/ray) and its
# Python (/home/ray/anaconda3) belongs to that user, so pip runs as `ray`, not root.
# There is no ENTRYPOINT or CMD here: KubeRay supplies the container's command.
FROM rayproject/ray:2.60.0-py311

USER ray
WORKDIR /home/ray
# Made by `ray`, so pip can build in it (COPY may create missing parents as root).
RUN mkdir /home/ray/ray-queue

# Dependencies first, from the lock only (hash-checked), so a source change reuses this layer.
COPY --chown=ray:users requirements/runtime.txt /home/ray/ray-queue/requirements/runtime.txt
RUN pip install --no-cache-dir --require-hashes -r /home/ray/ray-queue/requirements/runtime.txt

# Then ray-queue itself, non-editable; --no-deps: everything it needs came from the lock, and
# --no-build-isolation: the build backend (setuptools, wheel) is in the lock too.
COPY --chown=ray:users pyproject.toml README.md /home/ray/ray-queue/
COPY --chown=ray:users ray_queue/ /home/ray/ray-queue/ray_queue/
COPY --chown=ray:users autoscaler/ /home/ray/ray-queue/autoscaler/
RUN pip install --no-cache-dir --no-deps --no-build-isolation /home/ray/ray-queue

# The user every Ray container runs as (the chart's securityContext: uid 1000, gid 100).
USER ray
