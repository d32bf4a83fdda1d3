// The Elman cell (the Deep Learning Book's equation 10.8): what one step does with its
// recurrent product once it is summed. The crate splices this file into every recurrence
// skeleton (`recurrence*.wgsl`, at their `// {{cell}}` line), so each driver and kernel shape
// runs it without knowing which cell it is; another cell (GRU, LSTM) is another file with the
// same four functions over its own gate layout.
//
//   forward:  h(t) = act(a(t)),        a(t) = xu(t) + W h(t-1), xu = U x(t) + b (hoisted)
//   backward: dL/da(t) = dL/dh(t) act'(h(t)),  dL/dh(t) = dh_out(t) + Wᵀ dL/da(t+1)
//
// act' is taken from h itself (tanh' = 1 - h², relu' = [h > 0]), so a step saves nothing for
// the backward sweep but h. The nonlinearity `kind`: 0 tanh, 1 relu, 2 identity (a linear
// recurrence).

fn cell_forward(a: f32, kind: u32) -> f32 {
    if kind == 0u {
        return tanh(a);
    }
    if kind == 2u {
        return a;
    }
    return max(a, 0.0);
}

fn cell_backward(dh: f32, h: f32, kind: u32) -> f32 {
    if kind == 0u {
        return dh * (1.0 - h * h);
    }
    if kind == 2u {
        return dh;
    }
    return select(0.0, dh, h > 0.0);
}

fn cell_forward4(a: vec4<f32>, kind: u32) -> vec4<f32> {
    if kind == 0u {
        return tanh(a);
    }
    if kind == 2u {
        return a;
    }
    return max(a, vec4<f32>(0.0));
}

fn cell_backward4(dh: vec4<f32>, h: vec4<f32>, kind: u32) -> vec4<f32> {
    if kind == 0u {
        return dh * (1.0 - h * h);
    }
    if kind == 2u {
        return dh;
    }
    return select(vec4<f32>(0.0), dh, h > vec4<f32>(0.0));
}
