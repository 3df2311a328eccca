"""COCO annotations -> semantic and instance masks (numpy and pycocotools only; no torch)."""
