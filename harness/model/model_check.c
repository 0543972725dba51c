/* model_check.c — every tensor of a checkpoint is used by the model, or the load fails naming the first one
 * that is not, with a hint for the layouts people post: DistributedDataParallel's `module.` prefix,
 * facebookresearch/deit's LayerScale names (gamma_1/gamma_2; timm's checkpoint_filter_fn renames them),
 * a distilled or LayerScale or average-pool checkpoint read with an architecture that is not, and the
 * parts of other models vitq does not implement (qk_norm, register tokens, BEiT's relative position
 * bias, CLIP's pre-norm). A tensor that is not a parameter passes only if the model's family reads it
 * (vitq_family.uses_tensor: Swin's old buffers, which its checkpoint hook verifies by value). A silently
 * ignored tensor is a silently wrong number. */
#include "model/model.h"

#include <string.h>

static int has(const char *s, const char *part) { return strstr(s, part) != NULL; }
static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

const char *vitq_unused_hint(const vitq_model *m, const char *name, char *buf, size_t n) {
    const vitq_arch *a = &m->arch;
    const char *h = NULL;
    if (starts(name, "module."))
        h = "the names carry DistributedDataParallel's 'module.' prefix: save model.module.state_dict(), or strip "
            "'module.' from every name";
    else if (a->family != VITQ_FAMILY_VIT) /* the hints below name ViT/DeiT layouts and variants */
        h = NULL;
    else if (has(name, ".gamma_1") || has(name, ".gamma_2"))
        h = "facebookresearch/deit's name for a LayerScale gamma: rename blocks.N.gamma_1 / gamma_2 to "
            "blocks.N.ls1.gamma / ls2.gamma, as timm's checkpoint_filter_fn does";
    else if (has(name, ".ls1.gamma") || has(name, ".ls2.gamma"))
        h = "a LayerScale gamma (DeiT-III): the architecture used has no LayerScale; use --arch deit3_* or "
            "init_values in __metadata__";
    else if (starts(name, "dist_token") || starts(name, "head_dist."))
        h = "a distilled DeiT's distillation token / head: the architecture used is not distilled; use --arch "
            "deit_*_distilled_patch16_224 or distilled = true in __metadata__";
    else if (starts(name, "fc_norm.") || starts(name, "norm."))
        h = a->fc_norm ? "the final norm before pooling (norm.*), but the architecture used normalises after "
                         "pooling (fc_norm); set fc_norm = false in __metadata__"
                       : "the final norm after pooling (fc_norm.*, timm's use_fc_norm), but the architecture used "
                         "normalises before pooling; set global_pool = avg (and fc_norm = true) in __metadata__";
    else if (has(name, ".attn.qkv.bias"))
        h = "qkv biases, but the architecture used has qkv_bias = false";
    else if (starts(name, "pre_logits."))
        h = "a representation layer (timm <= 0.5): set representation_size in __metadata__";
    else if (starts(name, "cls_token"))
        h = "a class token, but the architecture used has class_token = false";
    else if (has(name, ".q_norm.") || has(name, ".k_norm."))
        h = "qk_norm (LayerNorm on q and k): a timm VisionTransformer argument vitq does not support";
    else if (has(name, "relative_position"))
        h = "a relative position bias (BEiT-style): not part of timm's VisionTransformer, not supported";
    else if (starts(name, "reg_token"))
        h = "register tokens (reg_tokens): not supported";
    else if (starts(name, "norm_pre."))
        h = "a norm before the blocks (pre_norm, CLIP): not supported";
    else if (starts(name, "attn_pool."))
        h = "attention pooling (global_pool = map): not supported";
    snprintf(buf, n, "%s", h ? h : "not a parameter of the architecture used");
    return buf;
}

int vitq_model_uses_tensor(const vitq_model *m, const char *name) {
    return vitq_model_param(m, name) != NULL || (m->fam->uses_tensor && m->fam->uses_tensor(m, name));
}

int vitq_model_check_tensors(const vitq_st_file *f, const vitq_model *m, vitq_err *e) {
    char hint[400];
    /* a prefixed state_dict: name the first tensor, whatever the order of the checks below */
    for (int i = 0; i < f->n_tensors; i++)
        if (starts(f->tensors[i].name, "module."))
            return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' is not used by the model (%s)", f->path,
                             f->tensors[i].name, vitq_unused_hint(m, f->tensors[i].name, hint, sizeof hint));
    for (int i = 0; i < f->n_tensors; i++)
        if (!vitq_model_uses_tensor(m, f->tensors[i].name))
            return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' is not used by the model %s (%s)", f->path,
                             f->tensors[i].name, m->arch.name, vitq_unused_hint(m, f->tensors[i].name, hint, sizeof hint));
    return VITQ_OK;
}
