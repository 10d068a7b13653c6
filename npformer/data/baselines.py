"""Baselines: what a model must beat.

Classification tasks:
- majority: always answer the most frequent training label.
- bag of words: multinomial naive Bayes on word counts (add-one smoothing) and a
  logistic regression on word counts (full-batch gradient descent, L2). Both see
  which words occur and how often, never their order, so a task they solve can
  be solved by spotting words; a task where they stay at chance needs structure.
  `logistic_regression` is the same classifier on any features (a linear probe).
Language models:
- `ngram_loss`: the cross-entropy of a unigram (order 1: word frequencies) or
  bigram (order 2: the previous token) model on held-out rows, the loss a
  language model has to get below to have learned more than frequencies or pairs.

Shapes: N examples, V vocabulary, L labels, D features.
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


def logistic_regression(X_train, y_train, X_test, n_labels=None, steps=500, lr=0.5, l2=1e-3,
                        standardize=False):
    """Softmax regression (full-batch gradient descent, L2) -> predicted labels of X_test.

    standardize: scale each feature to mean 0, std 1 on the training rows first (for
    dense features such as a network's hidden vectors; word counts are used as they are).
    Shapes: X_train (N,D), y_train (N,) ints, X_test (M,D) -> (M,)
    """
    X_train, X_test = np.asarray(X_train, np.float64), np.asarray(X_test, np.float64)
    if standardize:
        mean, std = X_train.mean(0), X_train.std(0) + 1e-8  # (D,)
        X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    n_labels = n_labels or int(y_train.max()) + 1
    N, D = X_train.shape
    W, b = np.zeros((D, n_labels)), np.zeros(n_labels)
    onehot = np.eye(n_labels)[y_train]  # (N,L)
    for _ in range(steps):
        logits = X_train @ W + b  # (N,D) @ (D,L) -> (N,L)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        dlogits = (probs - onehot) / N  # gradient of the mean cross-entropy
        W -= lr * (X_train.T @ dlogits + l2 * W)
        b -= lr * dlogits.sum(0)
    return (X_test @ W + b).argmax(1)  # (M,D) @ (D,L) -> (M,L) -> (M,)


def logistic_regression_accuracy(train, test, steps=500, lr=0.5, l2=1e-3):
    """Softmax regression on word counts (full-batch gradient descent), accuracy on `test`."""
    X_train, y_train, X_test, y_test, n_labels = _encode(train, test)
    predicted = logistic_regression(X_train, y_train, X_test, n_labels, steps, lr, l2)
    return float((predicted == y_test).mean())


def ngram_loss(train_rows, eval_rows, order, vocab_size, strengths=(0.1, 1, 10, 100, 1000)):
    """Cross-entropy (nats per predicted token) of an n-gram model on `eval_rows`.

    Rows are token-id lists [BOS, t1, .., tn, EOS]; like a language model's loss, every
    token after BOS is predicted (EOS included). order 1 (unigram): add-one smoothed
    frequencies. order 2 (bigram): p(w | v) = (c(v, w) + s p1(w)) / (c(v) + s), the
    counts of the pair pulled towards the unigram p1 by a strength s (a Dirichlet
    prior); s is chosen on the last 10% of train_rows, then the counts use all of them.
    """
    if order not in (1, 2):
        raise ValueError(f"order={order}: 1 (unigram) or 2 (bigram)")

    def pairs(rows):  # (previous token, token) of every prediction
        prev = np.concatenate([np.asarray(r[:-1]) for r in rows])
        nxt = np.concatenate([np.asarray(r[1:]) for r in rows])
        return prev, nxt

    def fit(rows):
        prev, nxt = pairs(rows)
        p1 = (np.bincount(nxt, minlength=vocab_size) + 1.0)  # (V,) add-one
        p1 /= p1.sum()
        counts = np.zeros((vocab_size, vocab_size))  # (V,V) c(v, w)
        np.add.at(counts, (prev, nxt), 1.0)
        return p1, counts

    def loss(model, rows, s):
        p1, counts = model
        prev, nxt = pairs(rows)
        if order == 1:
            return float(-np.log(p1[nxt]).mean())
        p = (counts[prev, nxt] + s * p1[nxt]) / (counts[prev].sum(1) + s)
        return float(-np.log(p).mean())

    cut = int(0.9 * len(train_rows))
    held_in = fit(train_rows[:cut])
    s = min(strengths, key=lambda s: loss(held_in, train_rows[cut:], s))
    return loss(fit(train_rows), eval_rows, s)


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
