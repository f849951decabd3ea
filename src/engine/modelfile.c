/* see modelfile.h */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/json.h"
#include "engine/modelfile.h"

#define PT_INDEX_MAX_BYTES (64u << 20)

/* A shard name from the index must be a plain file name in the same directory. */
static int shard_name_ok(const char *s) {
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..") && strlen(s) < 256;
}

int pt_hf_read_weights(const char *dir, pt_tensors *ts, pt_err *err) {
    char *single = pt_path_join(dir, "model.safetensors");
    char *index = pt_path_join(dir, "model.safetensors.index.json");
    int rc = PT_OK;
    if (!single || !index) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    if (pt_exists(single)) {
        rc = pt_safetensors_read(single, ts, err);
        goto out;
    }
    if (!pt_exists(index)) {
        rc = pt_errf(err, PT_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json", dir);
        goto out;
    }
    json_t *j = pt_json_load_file(index, PT_INDEX_MAX_BYTES, err);
    if (!j) {
        rc = err ? err->code : PT_EFORMAT;
        goto out;
    }
    json_t *wm = json_object_get(j, "weight_map");
    if (!json_is_object(wm)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: no \"weight_map\" object", index);
        json_decref(j);
        goto out;
    }
    /* Read each distinct shard once, then check the map and the shards agree exactly. */
    json_t *seen = json_object();
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            rc = pt_errf(err, PT_EFORMAT, "%s: weight_map[\"%s\"] is not a file name in this directory", index, name);
            break;
        }
        const char *shard = json_string_value(v);
        if (json_object_get(seen, shard)) continue;
        json_object_set_new(seen, shard, json_true());
        char *p = pt_path_join(dir, shard);
        rc = pt_safetensors_read(p, ts, err);
        free(p);
        if (rc) break;
    }
    if (!rc) {
        json_object_foreach(wm, name, v) {
            if (!pt_tensors_find(ts, name)) {
                rc = pt_errf(err, PT_EFORMAT, "%s: tensor '%s' is not in shard %s", index, name, json_string_value(v));
                break;
            }
        }
        if (!rc && json_object_size(wm) != ts->n)
            rc = pt_errf(err, PT_EFORMAT, "%s: the shards hold %zu tensors but weight_map lists %zu", index, ts->n,
                         json_object_size(wm));
    }
    json_decref(seen);
    json_decref(j);
out:
    free(single);
    free(index);
    return rc;
}

int pt_model_files_open(pt_model_files *mf, const char *path, pt_err *err) {
    memset(mf, 0, sizeof *mf);
    pt_tensors_init(&mf->tensors);
    struct stat st;
    if (stat(path, &st) < 0) return pt_errf(err, PT_ENOTFOUND, "%s: no such model file or directory", path);
    if (!(mf->path = strdup(path))) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc;
    if (S_ISDIR(st.st_mode)) {
        mf->format = PT_FORMAT_HF_DIR;
        mf->dir = strdup(path);
        char *cfg = pt_path_join(path, "config.json");
        rc = pt_config_load(cfg, &mf->config, err);
        free(cfg);
        if (!rc) rc = pt_hf_read_weights(path, &mf->tensors, err);
    } else {
        rc = pt_errf(err, PT_EUNSUPPORTED, "%s: not a model directory (GGUF files are not supported yet)", path);
    }
    if (rc) pt_model_files_close(mf);
    return rc;
}

void pt_model_files_close(pt_model_files *mf) {
    if (!mf) return;
    pt_tensors_free(&mf->tensors);
    free(mf->path);
    free(mf->dir);
    mf->path = mf->dir = NULL;
}
