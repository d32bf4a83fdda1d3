"""rnn-wgpu's models in PyTorch, with the parameter names rnn-wgpu's files use.

    from deep_rnn import DeepRNN, load

    model = DeepRNN(input_size=3, hidden_size=8, output_size=2, output_depth=2, output_width=16)
    o, h_n = model(x)                  # x [T, B, I] (or [B, T, I] with batch_first)
    model.save("model.safetensors")    # loads in rnn-wgpu: `rnn-wgpu run --model ...`
    model = load("model.safetensors")  # a model rnn-wgpu wrote, load_state_dict(strict=True)

The plain model is torch.nn.RNN (`rnn.*`) with a torch.nn.Linear head at every step (`fc.*`).
Deeper blocks (Pascanu, Gulcehre, Cho & Bengio 2014, "How to Construct Deep Recurrent Neural
Networks") add their own parameters; a plain model's state dict is unchanged:

    deep input: in_mlp.{j}.weight [width, I or width], in_mlp.{j}.bias [width],
        j = 0 .. input_depth - 1, each followed by input_nonlinearity; rnn.weight_ih_l0 then
        reads `width`.
    deep transition (DT-RNN): trans_l{k}.{j}.weight [out, in], trans_l{k}.{j}.bias [out]
        for every layer k (and trans_l{k}_reverse), j = 0 .. transition_depth - 1: H in (the
        act(a(t)) of nn.RNN's own step), H out (h(t)), transition_width between, each
        followed by transition_nonlinearity; with skip=True (DT(S)-RNN) also
        skip_l{k}.weight [H, H], h(t-1) added into the last layer's pre-activation.
    deep output (DO-RNN): out_mlp.{j}.weight [width, D*H or width], out_mlp.{j}.bias [width],
        j = 0 .. output_depth - 1, each followed by output_nonlinearity, then fc reads `width`.
    residual blocks (input_residual, output_residual; no parameters of their own): every
        layer of the block after the first adds its input to its output,
        z_j = z_{j-1} + act(layer_j(z_{j-1})).

The configuration goes in the safetensors `__metadata__` under the keys rnn-wgpu reads
(nonlinearity, num_layers, bidirectional, bias, deep_input_depth, deep_input_width,
deep_input_nonlinearity, deep_transition_depth, deep_transition_width,
deep_transition_nonlinearity, skip, deep_output_depth, deep_output_width,
deep_output_nonlinearity, deep_input_residual, deep_output_residual). With a deep transition the time loop runs here in Python (nn.RNN
keeps the parameters); without one, nn.RNN runs it.
"""

import torch

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v}

# The deepest block rnn-wgpu builds (its MAX_BLOCK_DEPTH).
MAX_BLOCK_DEPTH = 8


def _block(layers, act, residual, z):
    """A deeper block's layers over z, those after the first residual where asked."""
    for j, layer in enumerate(layers):
        y = act(layer(z))
        z = z + y if residual and j > 0 else y
    return z


class DeepRNN(torch.nn.Module):
    """An Elman RNN, optionally with deep input and output blocks, and a linear head at every
    step."""

    def __init__(self, input_size, hidden_size, output_size, num_layers=1, nonlinearity="tanh",
                 bias=True, bidirectional=False, batch_first=False, output_depth=0,
                 output_width=None, output_nonlinearity="tanh", input_depth=0, input_width=None,
                 input_nonlinearity="tanh", transition_depth=0, transition_width=None,
                 transition_nonlinearity="tanh", skip=False, input_residual=False,
                 output_residual=False):
        super().__init__()
        for name, on, depth in [("input_residual", input_residual, input_depth),
                                ("output_residual", output_residual, output_depth)]:
            if on and depth < 2:
                raise ValueError(f"{name} goes around the layers after the first: depth >= 2")
        self.input_residual = input_residual
        self.output_residual = output_residual
        for name, depth in [("output_depth", output_depth), ("input_depth", input_depth),
                            ("transition_depth", transition_depth)]:
            if not 0 <= depth <= MAX_BLOCK_DEPTH:
                raise ValueError(f"{name} must be 0 to {MAX_BLOCK_DEPTH} (as rnn-wgpu reads)")
        if transition_depth > 0 and transition_width is not None and transition_width < 1:
            raise ValueError("transition_width must be at least 1")
        in_width = hidden_size if input_width is None else input_width
        if input_depth > 0 and in_width < 1:
            raise ValueError("input_width must be at least 1")
        if input_nonlinearity not in ACTIVATIONS:
            raise ValueError(f"input_nonlinearity must be one of {sorted(ACTIVATIONS)}")
        self.input_nonlinearity = input_nonlinearity
        self.in_mlp = torch.nn.ModuleList(
            torch.nn.Linear(input_size if j == 0 else in_width, in_width)
            for j in range(input_depth))
        top = hidden_size * (2 if bidirectional else 1)
        width = top if output_width is None else output_width
        if output_depth > 0 and width < 1:
            raise ValueError("output_width must be at least 1")
        if output_nonlinearity not in ACTIVATIONS:
            raise ValueError(f"output_nonlinearity must be one of {sorted(ACTIVATIONS)}")
        # PyTorch's nn.RNN has no identity nonlinearity: rnn-wgpu's linear recurrence is not
        # expressible here.
        self.rnn = torch.nn.RNN(in_width if input_depth > 0 else input_size, hidden_size,
                                num_layers=num_layers,
                                nonlinearity=nonlinearity, bias=bias,
                                bidirectional=bidirectional, batch_first=batch_first)
        self.output_nonlinearity = output_nonlinearity
        if transition_nonlinearity not in ACTIVATIONS:
            raise ValueError(f"transition_nonlinearity must be one of {sorted(ACTIVATIONS)}")
        if skip and transition_depth < 1:
            raise ValueError("skip is the shortcut beside a deep transition: transition_depth >= 1")
        self.transition_nonlinearity = transition_nonlinearity
        self.transition_depth = transition_depth
        self.transition_width = hidden_size if transition_width is None else transition_width
        self.skip = skip
        w = self.transition_width
        for k in range(num_layers if transition_depth > 0 else 0):
            for r in ["", "_reverse"] if bidirectional else [""]:
                setattr(self, f"trans_l{k}{r}", torch.nn.ModuleList(
                    torch.nn.Linear(hidden_size if j == 0 else w,
                                    hidden_size if j + 1 == transition_depth else w)
                    for j in range(transition_depth)))
                if skip:
                    setattr(self, f"skip_l{k}{r}",
                            torch.nn.Linear(hidden_size, hidden_size, bias=False))
        self.out_mlp = torch.nn.ModuleList(
            torch.nn.Linear(top if j == 0 else width, width) for j in range(output_depth))
        self.fc = torch.nn.Linear(width if output_depth > 0 else top, output_size)

    def forward(self, x, h0=None):
        x = _block(self.in_mlp, ACTIVATIONS[self.input_nonlinearity], self.input_residual, x)
        if self.transition_depth > 0:
            out, h_n = self._deep_transition(x, h0)
        else:
            out, h_n = self.rnn(x, h0)
        out = _block(self.out_mlp, ACTIVATIONS[self.output_nonlinearity], self.output_residual,
                     out)
        return self.fc(out), h_n

    def _deep_transition(self, x, h0):
        """nn.RNN's recurrence written out, each step through the deep transition."""
        r_ = self.rnn
        if r_.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[0], x.shape[1]
        d_count = 2 if r_.bidirectional else 1
        act = ACTIVATIONS[r_.nonlinearity]
        tact = ACTIVATIONS[self.transition_nonlinearity]
        layer_in, h_n = x, []
        for k in range(r_.num_layers):
            outs = []
            for d in range(d_count):
                r = "_reverse" if d else ""
                w_ih = getattr(r_, f"weight_ih_l{k}{r}")
                w_hh = getattr(r_, f"weight_hh_l{k}{r}")
                b = (getattr(r_, f"bias_ih_l{k}{r}") + getattr(r_, f"bias_hh_l{k}{r}")
                     if r_.bias else 0.0)
                trans = getattr(self, f"trans_l{k}{r}")
                skip = getattr(self, f"skip_l{k}{r}", None)
                seq = layer_in if d == 0 else layer_in.flip(0)
                h = (h0[k * d_count + d] if h0 is not None
                     else x.new_zeros(batch, r_.hidden_size))
                hs = []
                for t in range(steps):
                    h_prev = h
                    z = act(seq[t] @ w_ih.T + h_prev @ w_hh.T + b)
                    for j, lin in enumerate(trans):
                        v = lin(z)
                        if j + 1 == len(trans) and skip is not None:
                            v = v + skip(h_prev)
                        z = tact(v)
                    h = z
                    hs.append(h)
                out = torch.stack(hs)
                outs.append(out if d == 0 else out.flip(0))
                h_n.append(h)
            layer_in = torch.cat(outs, dim=-1)
            if self.training and r_.dropout > 0 and k + 1 < r_.num_layers:
                layer_in = torch.nn.functional.dropout(layer_in, r_.dropout)
        if r_.batch_first:
            layer_in = layer_in.transpose(0, 1)
        return layer_in, torch.stack(h_n)

    def metadata(self):
        """The `__metadata__` rnn-wgpu reads for this configuration."""
        r = self.rnn
        meta = {"nonlinearity": r.nonlinearity, "num_layers": str(r.num_layers),
                "bidirectional": str(r.bidirectional).lower(), "bias": str(r.bias).lower()}
        if len(self.in_mlp) > 0:
            meta["deep_input_depth"] = str(len(self.in_mlp))
            meta["deep_input_width"] = str(self.in_mlp[0].out_features)
            meta["deep_input_nonlinearity"] = self.input_nonlinearity
            meta["deep_input_residual"] = str(self.input_residual).lower()
        if self.transition_depth > 0:
            meta["deep_transition_depth"] = str(self.transition_depth)
            meta["deep_transition_width"] = str(self.transition_width)
            meta["deep_transition_nonlinearity"] = self.transition_nonlinearity
            meta["skip"] = str(self.skip).lower()
        if len(self.out_mlp) > 0:
            meta["deep_output_depth"] = str(len(self.out_mlp))
            meta["deep_output_width"] = str(self.out_mlp[0].out_features)
            meta["deep_output_nonlinearity"] = self.output_nonlinearity
            meta["deep_output_residual"] = str(self.output_residual).lower()
        return meta

    def save(self, path):
        """Writes the state dict (float32) and the configuration as rnn-wgpu reads them."""
        from safetensors.torch import save_file
        save_file({k: v.detach().float().contiguous() for k, v in self.state_dict().items()},
                  path, metadata=self.metadata())


def load(path):
    """A model from a file rnn-wgpu (or `DeepRNN.save`) wrote, loaded strictly."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    state = {k: v for k, v in load_file(path).items() if not k.startswith("checkpoint.")}
    w_ih = state["rnn.weight_ih_l0"]
    in_depth = sum(1 for k in state if k.startswith("in_mlp.") and k.endswith(".weight"))
    t_depth = sum(1 for k in state if k.startswith("trans_l0.") and k.endswith(".weight"))
    input_size = state["in_mlp.0.weight"].shape[1] if in_depth else w_ih.shape[1]
    bidirectional = "rnn.weight_ih_l0_reverse" in state
    layers = 1 + max(int(k.removesuffix("_reverse").rsplit("_l", 1)[1])
                     for k in state if k.startswith("rnn.weight_ih_l"))
    depth = sum(1 for k in state if k.startswith("out_mlp.") and k.endswith(".weight"))
    model = DeepRNN(input_size, w_ih.shape[0], state["fc.weight"].shape[0],
                    num_layers=layers, nonlinearity=meta.get("nonlinearity", "tanh"),
                    bias="rnn.bias_ih_l0" in state, bidirectional=bidirectional,
                    output_depth=depth,
                    output_width=state["out_mlp.0.weight"].shape[0] if depth else None,
                    output_nonlinearity=meta.get("deep_output_nonlinearity", "tanh"),
                    input_depth=in_depth,
                    input_width=state["in_mlp.0.weight"].shape[0] if in_depth else None,
                    input_nonlinearity=meta.get("deep_input_nonlinearity", "tanh"),
                    transition_depth=t_depth,
                    transition_width=int(meta.get("deep_transition_width", 0)) or (
                        state["trans_l0.0.weight"].shape[0] if t_depth > 1 else None),
                    transition_nonlinearity=meta.get("deep_transition_nonlinearity", "tanh"),
                    skip="skip_l0.weight" in state,
                    input_residual=meta.get("deep_input_residual") == "true",
                    output_residual=meta.get("deep_output_residual") == "true")
    model.load_state_dict(state, strict=True)
    return model
