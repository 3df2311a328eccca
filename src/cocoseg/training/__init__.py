"""Training: the DataModule, the LightningModule, the loss, callbacks and the train entry."""
