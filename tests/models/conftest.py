import torch

# Batch-1 forwards of small images: one thread avoids thread hand-offs on a busy machine.
torch.set_num_threads(1)
