/* SPDX-License-Identifier: GPL-2.0 */
/*
 * snapguard: the C declarations that bindgen turns into the module's raw
 * bindings (rust/sys.rs), plus prototypes of the few C helpers that wrap
 * static inline functions and macros bindgen cannot bind (rust/helpers.c).
 */
#ifndef SNAPGUARD_H
#define SNAPGUARD_H

#include <linux/kobject.h>
#include <linux/sysfs.h>
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/blkdev.h>
#include <linux/bio.h>
#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/device-mapper.h>
#include <linux/dm-kcopyd.h>

extern const char snapguard_version[];

/* sysfs */
void snapguard_sysfs_attr_init(struct attribute *attr);
/*
 * Kernel series difference (7.3): kobj_attribute's show/store became
 * unions with const-taking variants; set them by name from C, where both
 * layouts accept the same code.
 */
void snapguard_kobj_attr_set_ops(struct kobj_attribute *a,
	ssize_t (*show)(struct kobject *, struct kobj_attribute *, char *),
	ssize_t (*store)(struct kobject *, struct kobj_attribute *, const char *, size_t));
struct kobject *snapguard_kernel_kobj(void);

/* modules and RCU */
struct module *snapguard_this_module(void);
void snapguard_synchronize_rcu_tasks(void);

/* fs_context */
void snapguard_fc_log(struct fs_context *fc, char level, const char *msg);
struct super_block *snapguard_fc_sb(struct fs_context *fc);
int snapguard_fc_purpose(struct fs_context *fc);

/* block devices */
struct block_device *snapguard_file_bdev(struct file *f);
void snapguard_file_no_readahead(struct file *f);
u64 snapguard_bdev_nr_bytes(struct block_device *bdev);
u64 snapguard_bdev_write_stamp(struct block_device *bdev);
u64 snapguard_bdev_diskseq(struct block_device *bdev);
bool snapguard_bdev_is_swap(struct block_device *bdev);
int snapguard_bdev_name(struct block_device *bdev, char *buf, size_t len);
struct block_device *snapguard_dev_to_bdev(struct device *dev);
const struct class *snapguard_bdev_class(struct block_device *bdev);
dev_t snapguard_dev_devt(struct device *dev);
void snapguard_fput(struct file *f);
struct class_dev_iter *snapguard_class_iter_new(const struct class *class);
struct device *snapguard_class_iter_next(struct class_dev_iter *iter);
void snapguard_class_iter_free(struct class_dev_iter *iter);

/* device-mapper targets and bios */
sector_t snapguard_dm_target_offset(struct dm_target *ti, sector_t sector);
sector_t snapguard_bio_sector(struct bio *bio);
void snapguard_bio_set_sector(struct bio *bio, sector_t sector);
void snapguard_bio_set_dev(struct bio *bio, struct block_device *bdev);
dev_t snapguard_bdev_devt(struct block_device *bdev);

/* volume I/O path (rust/target/volume.rs) */
dev_t snapguard_dm_target_md_devt(struct dm_target *ti);
void snapguard_dm_target_set_io(struct dm_target *ti, unsigned int per_io_data_size);
unsigned int snapguard_bio_op(struct bio *bio);
bool snapguard_bio_is_flush(struct bio *bio);
bool snapguard_bio_is_fua(struct bio *bio);
void snapguard_bio_copy_data(struct bio *bio, void *dst, unsigned int skip, unsigned int len);
unsigned int snapguard_bio_sectors(struct bio *bio);
void snapguard_bio_zero_endio(struct bio *bio);
void snapguard_bio_endio(struct bio *bio, int err);
void snapguard_bio_requeue(struct bio *bio);
void snapguard_cond_resched(void);
bool snapguard_dm_noflush_suspending(struct dm_target *ti);
struct bio *snapguard_bio_next(struct bio *bio);
void snapguard_bio_set_next(struct bio *bio, struct bio *next);
void *snapguard_alloc_wq(void);
void snapguard_destroy_wq(void *wq);
void snapguard_dm_target_enable_discards(struct dm_target *ti);
void snapguard_limits_discard(struct queue_limits *l, unsigned int sectors);
int snapguard_discard(struct block_device *bdev, sector_t sector, sector_t nr);
bool snapguard_cancel_dwork_sync(void *dwork);
int snapguard_zeroout(struct block_device *bdev, sector_t sector, sector_t nr);

/* mount source pinning and module lifetimes (rust/guard/fshook.rs) */
#include <linux/fdtable.h>
int snapguard_path_file_dev(struct file *f, dev_t *dev);
bool snapguard_can_install_fd(void);
struct block_device *snapguard_fc_root_bdev(struct fs_context *fc);
void snapguard_fc_drop_root(struct fs_context *fc);
bool snapguard_within_module(const void *addr, struct module *mod);

/* block-layer read-only state (protect.rs) */
bool snapguard_bdev_ro_flag(struct block_device *bdev);
bool snapguard_bdev_read_only(struct block_device *bdev);
void snapguard_bdev_set_ro_flag(struct block_device *bdev, bool ro);
const struct class *snapguard_block_class(void);
bool snapguard_bdev_has_holder(struct block_device *bdev);

/* device-mapper: is this device's I/O held back (suspended)? */
bool snapguard_dm_suspended(dev_t dev);
int snapguard_dm_lower(dev_t dev, dev_t *out, int max);

/* bio prison (rust/target/prison.rs): a submitted bio's completion status */
int snapguard_bio_status(struct bio *bio);

#endif
