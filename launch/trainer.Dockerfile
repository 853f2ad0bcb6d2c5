# The nima_tf trainer image for Vertex AI custom jobs (or any host with NVIDIA GPUs).
#
# Build from the repository root (`python -m launch.vertex --build_image` does this
# with Cloud Build, tagging the image with the commit):
#   docker build -f launch/trainer.Dockerfile -t IMAGE_URI .
#   docker run --gpus all IMAGE_URI --records_dir=gs://... --output_dir=gs://...
#
# Reproducible: the base is pinned by digest (the build refuses one that is not;
# README, "Reproducible images", says how to resolve it) and every Python package
# comes from launch/constraints.txt, the versions of the tested environment. The
# image holds `.[train]`: TensorFlow with the `and-cuda` extra (the CUDA and cuDNN
# libraries it was built against; the host needs only the NVIDIA driver, which
# Vertex AI's GPU machines provide), and no Apache Beam.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG BASE_IMAGE

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN case "${BASE_IMAGE}" in *@sha256:*) ;; *) echo "BASE_IMAGE=${BASE_IMAGE} is not pinned by digest: pass --build-arg BASE_IMAGE=<image>@sha256:<digest>" >&2; exit 1 ;; esac

WORKDIR /opt/nima_tf
COPY launch/constraints.txt ./

# The largest and least often changed layer first, so code changes rebuild fast.
RUN pip install --constraint constraints.txt "tensorflow[and-cuda]"

COPY setup.py ./
COPY nima_tf ./nima_tf
RUN pip install --constraint constraints.txt ".[train]" \
    && python -c "import nima_tf.train, tensorflow as tf; print(tf.__version__)" \
    && if python -c "import apache_beam" 2>/dev/null; then echo "Beam is in the trainer image" >&2; exit 1; fi

# Run from outside the source tree, so `import nima_tf` is the installed package.
WORKDIR /
ENTRYPOINT ["python", "-m", "nima_tf.train"]
