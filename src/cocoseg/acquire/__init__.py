"""Getting the data: the offline sample, HTTP downloads of COCO (whole archives or a subset), extract, the mirror tool."""
