"""A model file for the `ember` command: a digit classifier.

    ember compile examples/models/mlp.py --emit train
    ember train examples/models/mlp.py --epochs 20

The command reads `model` (required), `loss`, `optimizer`, `batch_size`
and, for `ember train`, `data()`."""

from ember import nn, optim

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
loss = nn.CrossEntropyLoss()
optimizer = optim.Adam(lr=1e-3)
batch_size = 32


def data():
    """scikit-learn's 8x8 digits scaled to [0, 1]: (x, y, x_val, y_val)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(x, digits.target, test_size=0.25, random_state=0)
    return x_train, y_train, x_val, y_val
