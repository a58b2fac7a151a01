"""The gradcam stage: GradCAM maps of the chosen mistakes, their figures, and how faithful each
layer's maps are (ROAD)."""
