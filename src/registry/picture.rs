//! The evaluation picture: confusion-matrix heat map and threshold sweep, as SVG.
