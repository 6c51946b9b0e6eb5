"""Generation: model loading, the diffusion maths, samplers and `sidbench generate`."""
