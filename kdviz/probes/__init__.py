"""The numbers behind every picture: pure functions over models and tensors.

``kdviz.probes.softening``: softened distributions, entropies, the dark-knowledge matrix.
``kdviz.probes.inside``: attention maps, FSP matrices, factor embeddings and t-SNE,
pairwise-distance structure, confusion comparisons.
``kdviz.probes.views``: what the Attention, FSP and Relations pages draw, and their default views of the
shipped students, made once and shipped.
``kdviz.probes.maps``: the Factor space page's default t-SNE maps of the shipped students, made once and shipped.
The app only plots what these return.
"""
