# A Dataflow worker image for the records job, with its dependencies preinstalled:
#   docker build -f launch/dataflow_worker.Dockerfile -t IMAGE_URI . && docker push IMAGE_URI
#   python -m launch.dataflow ... --sdk_container_image=IMAGE_URI
#
# On Beam's own SDK image (its Python and Beam must be the launching machine's:
# tests/test_images.py checks the tag against launch/constraints.txt), pinned by
# digest like the trainer's (README, "Reproducible images"). It installs this
# project's `install_requires` only, the job's needs, from the same constraints
# as the trainer image; no TensorFlow. Workers still install the launching
# checkout's code from --setup_file, so the image never runs stale code.
ARG BASE_IMAGE=apache/beam_python3.11_sdk:2.77.0
FROM ${BASE_IMAGE}
ARG BASE_IMAGE

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN case "${BASE_IMAGE}" in *@sha256:*) ;; *) echo "BASE_IMAGE=${BASE_IMAGE} is not pinned by digest: pass --build-arg BASE_IMAGE=<image>@sha256:<digest>" >&2; exit 1 ;; esac

# No WORKDIR: Beam's boot program keeps the base image's.
COPY launch/constraints.txt setup.py /opt/nima_tf/
COPY nima_tf /opt/nima_tf/nima_tf
COPY beam_jobs /opt/nima_tf/beam_jobs
RUN pip install --constraint /opt/nima_tf/constraints.txt /opt/nima_tf \
    && python -c "import beam_jobs.records_pipeline" \
    && if python -c "import tensorflow" 2>/dev/null; then echo "TensorFlow is in the worker image" >&2; exit 1; fi
