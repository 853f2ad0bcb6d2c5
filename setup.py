"""nima_tf: NIMA aesthetic scoring on AVA, from the raw download to an exported model."""

import setuptools

setuptools.setup(
    name="nima_tf",
    version="0.1.0",
    description=("NIMA (Neural Image Assessment) on AVA with TensorFlow: a Beam data "
                 "job, a tf.data input pipeline, distributed training and export."),
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["nima_tf", "nima_tf.*", "beam_jobs",
                                               "launch"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorboard>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "apache-beam[gcp]>=2.77,<2.78",
        # nima_tf/protos/example_pb2.py is protoc 31.1 gencode (needs >= 6.31.1);
        # Beam 2.77 caps protobuf below 7.
        "protobuf>=6.31.1,<7",
        "google-crc32c>=1.5,<2",  # TFRecord checksums in the Beam job (nima_tf/tfrecord.py)
        "numpy>=1.26,<3",
        "scipy>=1.13,<2",
        "pandas>=2.2,<4",
        "pillow>=11,<13",
        "absl-py>=2.1,<3",
        "gcsfs>=2024.6",
        "matplotlib>=3.9,<4",
        "markdown>=3.4,<4",  # the EDA report's HTML (nima_tf/eda.py)
        "tqdm>=4.66,<5",
    ],
    extras_require={
        "test": ["pytest>=8,<10", "pytest-xdist>=3.6,<4"],
        "cloud": ["google-cloud-aiplatform>=1.100,<2"],
        "bench": ["psutil>=5.9", "py-spy>=0.3"],
    },
)
