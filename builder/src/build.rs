//! `nodeimg build`: recipe to image, top-down.
