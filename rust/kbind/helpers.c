// SPDX-License-Identifier: GPL-2.0
/*
 * snapguard C helpers: only wrappers of static inline functions and macros
 * that bindgen cannot bind. All logic lives in Rust.
 */
#include <linux/part_stat.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include "snapguard.h"

MODULE_VERSION(SNAPGUARD_VERSION);
const char snapguard_version[] = SNAPGUARD_VERSION;

void snapguard_sysfs_attr_init(struct attribute *attr)
{
	sysfs_attr_init(attr);
}

void snapguard_kobj_attr_set_ops(struct kobj_attribute *a,
	ssize_t (*show)(struct kobject *, struct kobj_attribute *, char *),
	ssize_t (*store)(struct kobject *, struct kobj_attribute *, const char *, size_t))
{
	a->show = show;
	a->store = store;
}

struct kobject *snapguard_kernel_kobj(void)
{
	return kernel_kobj;
}

struct module *snapguard_this_module(void)
{
	return THIS_MODULE;
}

void snapguard_synchronize_rcu_tasks(void)
{
	synchronize_rcu_tasks();
}

void snapguard_fc_log(struct fs_context *fc, char level, const char *msg)
{
	if (level == 'e')
		errorfc(fc, "%s", msg);
	else
		warnfc(fc, "%s", msg);
}

struct super_block *snapguard_fc_sb(struct fs_context *fc)
{
	return fc->root ? fc->root->d_sb : NULL;
}

int snapguard_fc_purpose(struct fs_context *fc)
{
	return fc->purpose;
}

struct block_device *snapguard_file_bdev(struct file *f)
{
	return file_bdev(f);
}

/* FMODE_RANDOM is a macro with a __force cast bindgen cannot evaluate. */
void snapguard_file_no_readahead(struct file *f)
{
	f->f_mode |= FMODE_RANDOM;
}

u64 snapguard_bdev_nr_bytes(struct block_device *bdev)
{
	return bdev_nr_bytes(bdev);
}

/* Sectors written or discarded through this device and its whole disk: if
 * unchanged, nothing on this system has changed the device's contents. */
u64 snapguard_bdev_write_stamp(struct block_device *bdev)
{
	struct block_device *whole = bdev_whole(bdev);
	u64 s = part_stat_read(bdev, sectors[STAT_WRITE]) +
		part_stat_read(bdev, sectors[STAT_DISCARD]) +
		part_stat_read(bdev, ios[STAT_WRITE]);

	if (whole != bdev)
		s += part_stat_read(whole, sectors[STAT_WRITE]) +
		     part_stat_read(whole, sectors[STAT_DISCARD]) +
		     part_stat_read(whole, ios[STAT_WRITE]);
	return s;
}

u64 snapguard_bdev_diskseq(struct block_device *bdev)
{
	return bdev->bd_disk->diskseq;
}

bool snapguard_bdev_is_swap(struct block_device *bdev)
{
	return IS_SWAPFILE(bdev->bd_mapping->host);
}

int snapguard_bdev_name(struct block_device *bdev, char *buf, size_t len)
{
	return snprintf(buf, len, "%pg", bdev);
}

struct block_device *snapguard_dev_to_bdev(struct device *dev)
{
	return dev_to_bdev(dev);
}

const struct class *snapguard_bdev_class(struct block_device *bdev)
{
	return bdev->bd_device.class;
}

dev_t snapguard_dev_devt(struct device *dev)
{
	return dev->devt;
}

void snapguard_fput(struct file *f)
{
	fput(f);
}

struct class_dev_iter *snapguard_class_iter_new(const struct class *class)
{
	struct class_dev_iter *iter = kmalloc(sizeof(*iter), GFP_KERNEL);

	if (iter)
		class_dev_iter_init(iter, class, NULL, NULL);
	return iter;
}

struct device *snapguard_class_iter_next(struct class_dev_iter *iter)
{
	return class_dev_iter_next(iter);
}

void snapguard_class_iter_free(struct class_dev_iter *iter)
{
	class_dev_iter_exit(iter);
	kfree(iter);
}

/* device-mapper targets and bios */

sector_t snapguard_dm_target_offset(struct dm_target *ti, sector_t sector)
{
	return dm_target_offset(ti, sector);
}

sector_t snapguard_bio_sector(struct bio *bio)
{
	return bio->bi_iter.bi_sector;
}

void snapguard_bio_set_sector(struct bio *bio, sector_t sector)
{
	bio->bi_iter.bi_sector = sector;
}

void snapguard_bio_set_dev(struct bio *bio, struct block_device *bdev)
{
	bio_set_dev(bio, bdev);
}

dev_t snapguard_bdev_devt(struct block_device *bdev)
{
	return bdev->bd_dev;
}

/* volume I/O path (rust/target/volume.rs) */

dev_t snapguard_dm_target_md_devt(struct dm_target *ti)
{
	return disk_devt(dm_disk(dm_table_get_md(ti->table)));
}

void snapguard_dm_target_set_io(struct dm_target *ti, unsigned int per_io_data_size)
{
	ti->per_io_data_size = per_io_data_size;
	ti->accounts_remapped_io = true;
	ti->num_flush_bios = 1;
	ti->flush_supported = true;
}

unsigned int snapguard_bio_op(struct bio *bio)
{
	return bio_op(bio);
}

bool snapguard_bio_is_flush(struct bio *bio)
{
	return op_is_flush(bio->bi_opf) && (bio->bi_opf & REQ_PREFLUSH);
}

bool snapguard_bio_is_fua(struct bio *bio)
{
	return bio->bi_opf & REQ_FUA;
}

/*
 * bio_for_each_segment() and memcpy_from_bvec(): copies len bytes of the
 * bio's data, from byte skip of it, to dst. The caller checks the range.
 */
void snapguard_bio_copy_data(struct bio *bio, void *dst, unsigned int skip, unsigned int len)
{
	struct bio_vec bv;
	struct bvec_iter iter;

	bio_for_each_segment(bv, bio, iter) {
		if (!len)
			break;
		if (skip >= bv.bv_len) {
			skip -= bv.bv_len;
			continue;
		}
		bv.bv_offset += skip;
		bv.bv_len = min(bv.bv_len - skip, len);
		skip = 0;
		memcpy_from_bvec(dst, &bv);
		dst += bv.bv_len;
		len -= bv.bv_len;
	}
}

unsigned int snapguard_bio_sectors(struct bio *bio)
{
	return bio_sectors(bio);
}

void snapguard_bio_zero_endio(struct bio *bio)
{
	zero_fill_bio(bio);
	bio_endio(bio);
}

void snapguard_bio_endio(struct bio *bio, int err)
{
	bio->bi_status = errno_to_blk_status(err);
	bio_endio(bio);
}

void snapguard_cond_resched(void)
{
	cond_resched();
}

/* Hands the bio back to dm core, which holds it across a noflush suspend. */
void snapguard_bio_requeue(struct bio *bio)
{
	bio->bi_status = BLK_STS_DM_REQUEUE;
	bio_endio(bio);
}

bool snapguard_dm_noflush_suspending(struct dm_target *ti)
{
	return dm_noflush_suspending(ti);
}

struct bio *snapguard_bio_next(struct bio *bio)
{
	return bio->bi_next;
}

void snapguard_bio_set_next(struct bio *bio, struct bio *next)
{
	bio->bi_next = next;
}

int snapguard_zeroout(struct block_device *bdev, sector_t sector, sector_t nr)
{
	return blkdev_issue_zeroout(bdev, sector, nr, GFP_NOIO, 0);
}

void *snapguard_alloc_wq(void)
{
	return alloc_workqueue("snapguard-pool", WQ_MEM_RECLAIM | WQ_UNBOUND, 0);
}

void snapguard_destroy_wq(void *wq)
{
	destroy_workqueue(wq);
}

void snapguard_dm_target_enable_discards(struct dm_target *ti)
{
	ti->num_discard_bios = 1;
	ti->discards_supported = true;
	ti->max_discard_granularity = true;
}

void snapguard_limits_discard(struct queue_limits *l, unsigned int sectors)
{
	l->discard_granularity = sectors << SECTOR_SHIFT;
	l->max_hw_discard_sectors = sectors;
}

int snapguard_discard(struct block_device *bdev, sector_t sector, sector_t nr)
{
	return blkdev_issue_discard(bdev, sector, nr, GFP_NOIO);
}

bool snapguard_cancel_dwork_sync(void *dwork)
{
	return cancel_delayed_work_sync(dwork);
}

/* The checks lookup_bdev() makes on the path it resolved, on the path of an
 * O_PATH file: a block device node on a mount that allows devices (the
 * test of may_open_dev(), which is not exported; the file system's own
 * lookup_bdev() of the pinned path makes the real one again). */
int snapguard_path_file_dev(struct file *f, dev_t *dev)
{
	struct inode *inode = d_backing_inode(f->f_path.dentry);

	if (!S_ISBLK(inode->i_mode))
		return -ENOTBLK;
	if ((f->f_path.mnt->mnt_flags & MNT_NODEV) ||
	    (f->f_path.mnt->mnt_sb->s_iflags & SB_I_NODEV))
		return -EACCES;
	if (!inode->i_rdev)
		return -ENODEV;
	*dev = inode->i_rdev;
	return 0;
}

/* Whether the current task has a file table of its own to put a descriptor
 * in (kernel threads share init's). */
bool snapguard_can_install_fd(void)
{
	return current->files && !(current->flags & PF_KTHREAD);
}

struct block_device *snapguard_fc_root_bdev(struct fs_context *fc)
{
	return fc->root ? fc->root->d_sb->s_bdev : NULL;
}

/* Undoes a successful get_tree (as the VFS's own fc_drop_locked()). */
void snapguard_fc_drop_root(struct fs_context *fc)
{
	struct super_block *sb = fc->root->d_sb;

	dput(fc->root);
	fc->root = NULL;
	deactivate_locked_super(sb);
}

bool snapguard_within_module(const void *addr, struct module *mod)
{
	return within_module((unsigned long)addr, mod);
}

/* Block-layer read-only state (rust/guard/protect.rs). BD_READ_ONLY is the
 * per-device flag BLKROSET sets; bdev_read_only() also honours the whole
 * disk's and the driver's read-only state. */
bool snapguard_bdev_ro_flag(struct block_device *bdev)
{
	return bdev_test_flag(bdev, BD_READ_ONLY);
}

bool snapguard_bdev_read_only(struct block_device *bdev)
{
	return bdev_read_only(bdev);
}

void snapguard_bdev_set_ro_flag(struct block_device *bdev, bool ro)
{
	if (ro)
		bdev_set_flag(bdev, BD_READ_ONLY);
	else
		bdev_clear_flag(bdev, BD_READ_ONLY);
}

/* block_class is not exported; every disk's and partition's device points
 * at it. (C because the walk is list_for_each_entry under a spinlock,
 * macros bindgen cannot bind.) Take it from the first block device inode that has one (the bdev
 * file system's root inode has none). */
const struct class *snapguard_block_class(void)
{
	const struct class *class = NULL;
	struct inode *inode;

	spin_lock(&blockdev_superblock->s_inode_list_lock);
	list_for_each_entry(inode, &blockdev_superblock->s_inodes, i_sb_list) {
		class = I_BDEV(inode)->bd_device.class;
		if (class)
			break;
	}
	spin_unlock(&blockdev_superblock->s_inode_list_lock);
	return class;
}

/* Whether someone holds the device exclusively (a mounted file system,
 * swap, device-mapper, an O_EXCL opener such as fsck). Unlocked read:
 * a hint, see rust/guard/protect.rs. */
bool snapguard_bdev_has_holder(struct block_device *bdev)
{
	return READ_ONCE(bdev->bd_holder) != NULL;
}

/*
 * Whether @dev is a device-mapper device whose bios are held back: it is
 * suspended (dmsetup suspend, cryptsetup luksSuspend, an internal suspend)
 * or being suspended, so a read would wait until it is resumed. This is
 * the test dm_submit_bio() makes (DMF_BLOCK_IO_FOR_SUSPEND) and
 * dm_suspended_md() (DMF_SUSPENDED), neither of which is exported; the
 * flags are in the kernel's private drivers/md/dm-core.h, which Kbuild
 * puts on the include path when the kernel tree has it.
 */
#if IS_ENABLED(CONFIG_BLK_DEV_DM) && defined(SNAPGUARD_DM_CORE)
#include "dm-core.h"

bool snapguard_dm_suspended(dev_t dev)
{
	struct mapped_device *md = dm_get_md(dev);
	bool r;

	if (!md)
		return false;
	r = test_bit(DMF_BLOCK_IO_FOR_SUSPEND, &md->flags) ||
	    test_bit(DMF_SUSPENDED, &md->flags);
	dm_put(md);
	return r;
}

/*
 * The devices under device-mapper device @dev's live table, at most @max
 * of them into @out. Returns how many there are (may exceed @max), or
 * -ENODEV if @dev is not a device-mapper device.
 */
int snapguard_dm_lower(dev_t dev, dev_t *out, int max)
{
	struct mapped_device *md = dm_get_md(dev);
	struct dm_dev_internal *dd;
	struct dm_table *t;
	int idx, n = 0;

	if (!md)
		return -ENODEV;
	idx = srcu_read_lock(&md->io_barrier);
	t = srcu_dereference(md->map, &md->io_barrier);
	if (t) {
		list_for_each_entry(dd, &t->devices, list) {
			if (n < max)
				out[n] = dd->dm_dev->bdev->bd_dev;
			n++;
		}
	}
	srcu_read_unlock(&md->io_barrier, idx);
	dm_put(md);
	return n;
}
#else
bool snapguard_dm_suspended(dev_t dev)
{
	return false;
}

int snapguard_dm_lower(dev_t dev, dev_t *out, int max)
{
	return -ENODEV;
}
#endif

int snapguard_bio_status(struct bio *bio)
{
	return blk_status_to_errno(bio->bi_status);
}
