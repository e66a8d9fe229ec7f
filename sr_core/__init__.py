"""sr_core: 4x super-resolution with SRResNet — model, data, metrics, training, inference, submission."""
