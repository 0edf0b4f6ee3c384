"""adaspx: superpixel-based active learning for semantic segmentation."""

__version__ = "0.1.0"

IGNORE_INDEX = 255
"""Label value meaning void / unlabeled / sieved, in ground truth and in training targets."""
