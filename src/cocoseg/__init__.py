"""cocoseg: COCO instance annotations -> segmentation masks -> trained and compared models."""

__version__ = "0.1.0"
