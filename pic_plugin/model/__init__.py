"""The learned scorer: the PIC network, its versions, framing rules, fine-tuning and the scorer registry."""
