"""Installs od_meta; the generated *_pb2.py modules ship inside the package."""

import os

from setuptools import find_packages, setup

_HERE = os.path.dirname(os.path.abspath(__file__))


def _readme():
  with open(os.path.join(_HERE, 'README.md'), encoding='utf-8') as f:
    return f.read()


setup(
    name='od_meta',
    version='0.1.0',
    description=('A TensorFlow 2 object-detection framework configured by '
                 'protobuf pipeline configs (SSD, Faster R-CNN, R-FCN, '
                 'CenterNet, TTFNet, CornerNet, FCOS).'),
    long_description=_readme(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',
    packages=find_packages(include=['od_meta', 'od_meta.*']),
    install_requires=[
        'tensorflow>=2.20,<2.21',
        'tf-models-official>=2.20,<2.21',
        'protobuf>=7.35.1',
        'pycocotools>=2.0.7',
        'absl-py>=1.4',
        'numpy>=1.26',
        'matplotlib>=3.8',
        'mlxtend>=0.23',
        'pillow>=10',
        'pyyaml>=6',
    ],
    extras_require={
        'test': ['pytest>=8', 'grpcio-tools==1.85.1'],
    },
)
