"""Train a digit classifier with ember: scikit-learn's 8x8 digits, an MLP,
cross-entropy and Adam. Reaches about 98% test accuracy in 20 epochs.

    python examples/train_digits.py --epochs 20 --no-progress
    mpiexec -n 2 python examples/train_digits.py --distributed   # two processes train together
"""

import argparse

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import ember
from ember import nn, optim


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", help="ember backend (default: ember's default)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed for initial weights and shuffling")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="train data-parallel with the processes of an MPI job (start it with mpiexec -n N)",
    )
    return parser.parse_args()


def main():
    args = parse_args()
    rank = 0
    if args.distributed:
        import ember.distributed as dist

        world = dist.init()
        rank = world.rank

    # 1797 grayscale 8x8 images (64 pixel values 0..16), standardized with the
    # training set's mean and spread.
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.25, random_state=0)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = ((x - mean) / std for x in (x_train, x_test))

    # The model is declared like a PyTorch one; ember.compile traces it, derives
    # the backward pass, adds the Adam update and builds one training program.
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    backend = {"backend": args.backend} if args.backend else {}
    program = ember.compile(
        model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), batch_size=32, seed=args.seed, **backend
    )
    say = print if rank == 0 else lambda *args: None  # with --distributed, rank 0 reports
    say(program)

    # --distributed: every rank steps on 32 rows of its shard of each epoch,
    # and the gradients are averaged over the ranks before each update
    history = program.fit(
        x_train, y_train, epochs=args.epochs, progress=not args.no_progress, distributed=args.distributed
    )
    for epoch, (loss, seconds) in enumerate(zip(history["loss"], history["seconds"], strict=True), 1):
        say(f"epoch {epoch:2d}  loss {loss:.4f}  {seconds * 1e3:.1f} ms")

    metrics = program.evaluate(x_test, y_test)  # loss and accuracy over the whole test set
    say(f"test loss {metrics['loss']:.4f}  test accuracy {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
