"""Regression with ember: predict diabetes progression from 10 features with
a small MLP and mean squared error, and compare with always predicting the
mean (the baseline a model must beat to have learned anything).

    python examples/regression_diabetes.py --epochs 30
"""

import argparse

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

import ember
from ember import nn, optim


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", help="ember backend (default: ember's default)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0, help="seed for initial weights and shuffling")
    return parser.parse_args()


def report(name, prediction, target):
    """Print root mean squared error and R^2 (1 = perfect, 0 = no better than the mean)."""
    rmse = np.sqrt(np.mean((prediction - target) ** 2))
    r2 = 1 - np.sum((prediction - target) ** 2) / np.sum((target - target.mean()) ** 2)
    print(f"{name:<14} test RMSE {rmse:6.2f}  R^2 {r2:6.3f}")


def main():
    args = parse_args()
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)

    # Standardize features and target with the training set's statistics.
    x_mean, x_std = x_train.mean(axis=0), x_train.std(axis=0)
    y_mean, y_std = y_train.mean(), y_train.std()
    x_train, x_test = (x_train - x_mean) / x_std, (x_test - x_mean) / x_std

    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    backend = {"backend": args.backend} if args.backend else {}
    program = ember.compile(
        model, loss=nn.MSELoss(), optimizer=optim.Adam(lr=1e-3), batch_size=32, seed=args.seed, **backend
    )
    history = program.fit(x_train, (y_train - y_mean) / y_std, epochs=args.epochs, progress=False)
    print(f"trained {args.epochs} epochs: loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}")

    # predict returns one column; undo the target scaling to report in the original units.
    prediction = program.predict(x_test)[:, 0] * y_std + y_mean
    report("MLP", prediction, y_test)
    report("constant mean", np.full_like(y_test, y_mean), y_test)


if __name__ == "__main__":
    main()
