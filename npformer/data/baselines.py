"""Baselines for the classification tasks: what a model must beat.

- majority: always answer the most frequent training label.
- bag of words: multinomial naive Bayes on word counts (add-one smoothing) and a
  logistic regression on word counts (full-batch gradient descent, L2). Both see
  which words occur and how often, never their order, so a task they solve can
  be solved by spotting words; a task where they stay at chance needs structure.

Shapes: N examples, V vocabulary, L labels.
`python -m npformer.data.baselines` prints the table in docs/toy_corpus.md.
"""
from collections import Counter

import numpy as np


def majority_accuracy(train, test):
    """Accuracy on `test` of always predicting the most frequent label of `train`."""
    label = Counter(label for _, label in train).most_common(1)[0][0]
    return sum(y == label for _, y in test) / len(test)


def _bag_of_words(examples, vocab):
    """(text, label) list -> word counts (N,V); words not in vocab are dropped."""
    counts = np.zeros((len(examples), len(vocab)))
    for n, (text, _) in enumerate(examples):
        for word in text.split():
            if word in vocab:
                counts[n, vocab[word]] += 1
    return counts


def _encode(train, test):
    vocab = {w: k for k, w in enumerate(sorted({w for text, _ in train for w in text.split()}))}
    labels = sorted({y for _, y in train})
    index = {y: k for k, y in enumerate(labels)}
    X_train, X_test = _bag_of_words(train, vocab), _bag_of_words(test, vocab)
    y_train = np.array([index[y] for _, y in train])
    y_test = np.array([index.get(y, -1) for _, y in test])  # -1: a label train never had
    return X_train, y_train, X_test, y_test, len(labels)


def naive_bayes_accuracy(train, test):
    """Multinomial naive Bayes on word counts, trained on `train`, accuracy on `test`."""
    X_train, y_train, X_test, y_test, n_labels = _encode(train, test)
    log_prior = np.log(np.bincount(y_train, minlength=n_labels) / len(y_train))  # (L,)
    word_counts = np.stack([X_train[y_train == k].sum(0) for k in range(n_labels)])  # (L,V)
    log_likelihood = np.log((word_counts + 1) / (word_counts + 1).sum(1, keepdims=True))
    scores = X_test @ log_likelihood.T + log_prior  # (N,V) @ (V,L) -> (N,L)
    return float((scores.argmax(1) == y_test).mean())


def logistic_regression_accuracy(train, test, steps=500, lr=0.5, l2=1e-3):
    """Softmax regression on word counts (full-batch gradient descent), accuracy on `test`."""
    X_train, y_train, X_test, y_test, n_labels = _encode(train, test)
    N, V = X_train.shape
    W, b = np.zeros((V, n_labels)), np.zeros(n_labels)
    onehot = np.eye(n_labels)[y_train]  # (N,L)
    for _ in range(steps):
        logits = X_train @ W + b  # (N,V) @ (V,L) -> (N,L)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        dlogits = (probs - onehot) / N  # gradient of the mean cross-entropy
        W -= lr * (X_train.T @ dlogits + l2 * W)
        b -= lr * dlogits.sum(0)
    return float(((X_test @ W + b).argmax(1) == y_test).mean())


def baseline_table(tasks=None, n_train=2000, n_valid=500, n_test=1000, seeds=(0, 1, 2)):
    """Label balance and baseline test accuracies per task, mean over seeds -> list of dicts."""
    from .classify import TASKS, make_task

    rows = []
    for name in tasks or list(TASKS):
        results = {"majority": [], "naive_bayes": [], "logistic_regression": []}
        for seed in seeds:
            data = make_task(name, n_train, n_valid, n_test, seed=seed)
            results["majority"].append(majority_accuracy(data["train"], data["test"]))
            results["naive_bayes"].append(naive_bayes_accuracy(data["train"], data["test"]))
            results["logistic_regression"].append(
                logistic_regression_accuracy(data["train"], data["test"]))
        balance = Counter(label for _, label in data["train"])
        rows.append({"task": name, "balance": dict(balance),
                     **{k: float(np.mean(v)) for k, v in results.items()},
                     **{k + "_std": float(np.std(v)) for k, v in results.items()}})
    return rows


if __name__ == "__main__":
    print("task | label balance (train) | majority | naive Bayes | logistic regression")
    for row in baseline_table():
        balance = ", ".join(f"{k} {v}" for k, v in sorted(row["balance"].items()))
        print(f"{row['task']} | {balance} | {row['majority']:.3f} | "
              f"{row['naive_bayes']:.3f} ± {row['naive_bayes_std']:.3f} | "
              f"{row['logistic_regression']:.3f} ± {row['logistic_regression_std']:.3f}")
